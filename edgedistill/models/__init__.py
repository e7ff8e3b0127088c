"""Teacher and student factories, feature taps, distillation heads and the deployable model."""
