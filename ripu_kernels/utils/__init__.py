"""Small helpers of the training driver."""
