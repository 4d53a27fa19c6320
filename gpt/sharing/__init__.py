"""Sharing: weights files on disk, `GPT` with from_pretrained / save_pretrained / push_to_hub, the Hub, the model
card, and the export folder that transformers and onnxruntime load (through GPT-2's names)."""
