// OpenBLAS's cblas.h (found through pkg-config's include path) declares the CBLAS interface and
// openblas_set_num_threads / openblas_get_num_threads, which MoETensor uses to keep BLAS single-threaded
// inside its own parallel regions.
#include <cblas.h>
