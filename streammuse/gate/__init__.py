"""The CI regression gate (`streammuse gate`): a fixed, seeded evaluation compared with a
committed baseline, metric by metric."""
