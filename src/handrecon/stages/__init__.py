"""Training stages: one LightningModule configured per stage (ssl_shape, ssl_kp, ssl_finetune, ssl_e2e)."""
