"""One run: the trainer (its lifecycle and its loop), the training step, the data on the device and
its order, augmentation, packed runs, the seen-count probe and torchrun's processes."""
