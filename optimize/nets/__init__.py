"""Networks of the one-shot backends, written in plain PyTorch with the official state_dict names."""
