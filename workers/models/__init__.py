"""Pose models behind the `workers.infer.PoseEstimator` interface, one module per model."""
