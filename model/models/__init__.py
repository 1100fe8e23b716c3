"""One module per architecture; `model.registry` maps HF `architectures[0]` to the classes."""
