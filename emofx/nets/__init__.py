"""Networks: the paper's CNN, its convolution kernels, augmentation, training and checkpoints."""
