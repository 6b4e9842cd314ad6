"""Models: the hand model (:mod:`.hand_model`, :mod:`.openhand`, :mod:`.mano_io`, :mod:`.anatomy`) and the
network parts. Kept import-light: import the submodule you need (``from handrecon.models.hand_model import
HandModel``)."""
