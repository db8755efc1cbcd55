"""A finished run as a model to ship: its output model folded into one classifier, exported (ONNX,
TorchScript) with its metadata and model card, predicted with and evaluated (an ONNX export without
torch), its cost against the vendor, and open-vocabulary classes bought for it."""
