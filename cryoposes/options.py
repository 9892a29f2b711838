"""The named choices of cryoposes' methods and the defaults they share, in one light module.

It imports nothing (no NumPy, no TensorFlow), so ``cryoposes VERB --help`` lists the choices at
once; the library modules take their choices from here, so the command line and the library
cannot drift apart. Each tuple of choices lists its default first.
"""

__all__ = ["HEADS", "LOSSES", "NORMALIZATIONS", "TRAINING_SAMPLINGS", "INITS", "RECOVERY_SAMPLINGS", "TURNS"]

#: Distance heads of the Siamese network (:mod:`cryoposes.siamese`), the default first.
HEADS = ("rotation", "cosine", "euclidean")

#: Pair losses of distance training (:mod:`cryoposes.training`): mean absolute error (the 2021
#: paper's code, the default), mean squared error (the seed report), or ``chordal``: the mean
#: squared difference of ``cos d`` (i.e. of squared chordal distances ‖Rᵢ − Rⱼ‖² = 4(1 − cos d)),
#: whose gradient avoids acos' infinite slope at d = π, where most targets of uniform rotations lie.
LOSSES = ("mae", "mse", "chordal")

#: Normalisation layers of the encoder: BatchNorm (the default: with it and 64-image batches
#: 5j0n at 64 px learned in ~10 min what GroupNorm with 128-image batches had not in 35; about
#: half GroupNorm's cost per step; evaluation statistics recomputed after training), GroupNorm
#: (no train/evaluation difference), or none.
NORMALIZATIONS = ("batch", "group", "none")

#: Pairs a training batch is scored on: all pairs of the batch (the default), a fixed random
#: fraction of all pairs (the 2021 paper's 1%), or weights that flatten the d_q histogram.
TRAINING_SAMPLINGS = ("all", "fraction", "flat")

#: Starting poses of orientation recovery (:mod:`cryoposes.recovery`): the spectral start
#: computed from the distances (the default), uniform random, or the true poses (the seed
#: report's Table 1).
INITS = ("spectral", "random", "true")

#: Pairs a recovery step fits: uniform random, each particle's nearest neighbours under the
#: target distance, or half of each (the seed report's Phase 2.1).
RECOVERY_SAMPLINGS = ("random", "knn", "mixed")

#: In-plane turns over which learned distance matrices are averaged, by default
#: (:func:`cryoposes.siamese.distance_matrix`): d_q does not change when both images of a pair
#: turn alike, while the network's errors partly average out.
TURNS = 8

#: Particles above which a learned distance is never made into an N×N matrix (400 MB in float32;
#: measured at N = 20,000 with the matrix: 9 GB peak and 54 recovery steps/s, as random reads
#: from a 1.6 GB matrix miss every cache).
DENSE_LIMIT = 10000
