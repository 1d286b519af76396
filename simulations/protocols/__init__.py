"""The MER field's evaluation protocols, in centralized, federated and federated+DP modes.

* :mod:`.folds`: LOSO, grouped-subject and cross-dataset splits;
* :mod:`.data`: a manifest's clips prepared for a model (apex features or flow
  sequences), with subject and dataset;
* :mod:`.pooled`: metrics on confusion counts pooled over folds;
* :mod:`.runner`: one protocol in one mode; the federated modes run every fold
  through the real ServerApp and ClientApp over the in-process transport;
* :mod:`.compare`: the three modes and an epsilon sweep side by side.
"""
