"""Training: prepare (data, model, loss, optimizer on a device), the fit loop, checkpoint
state, inference, metrics meters, devices and torch.distributed."""
