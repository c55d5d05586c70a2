"""How far a normalised intensity may lie outside the volume's robust range: shared by the clustering's
channels and the model's input, which normalise alike (1st..99th percentile -> 0..1)."""

#: how far outside the 1st..99th percentile range (in units of that range) a normalised value may lie;
#: beyond it a value is clamped. One stray voxel at 1e9 (a hot pixel, a corrupted value) otherwise
#: holds the whole standard deviation the mixture standardises by, and every other voxel falls into
#: one cluster; in the model it is an input a million times larger than any it learnt from. The real
#: volumes measured span -0.7..3.2 (the nuclei stack's brightest spots) in these units, so none is
#: touched; a saturated bright class (gold fiducials) stays a class of its own.
OUTLIER_SPANS = 3.0
