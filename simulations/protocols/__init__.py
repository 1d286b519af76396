"""The MER field's evaluation protocols, in centralized, federated and federated+DP modes.

* :mod:`.folds`: LOSO, grouped-subject and cross-dataset splits;
* :mod:`.data`: a manifest's clips prepared for a model (apex features or flow
  sequences), with subject and dataset;
* :mod:`.local_training`: plain (non-DP) minibatch SGD;
* :mod:`.federated`: in-process FedAvg over per-subject devices, with or without DP-SGD;
* :mod:`.pooled`: metrics on predictions pooled over folds;
* :mod:`.runner`: one protocol in one mode -> one results format;
* :mod:`.compare`: the three modes and an epsilon sweep side by side.
"""
