/* cblas_matmul.c - the reference for bench/tensor_bench.lua: cblas_sgemm called directly on
 * n x n float32 matrices, median of runs, printed as "n ms gflops". */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 512, runs = argc > 2 ? atoi(argv[2]) : 21;
    if (argc > 3)
        openblas_set_num_threads(atoi(argv[3]));
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    double *t = malloc(sizeof(double) * runs);
    if (!a || !b || !c || !t)
        return 1;
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)rand() / RAND_MAX;
        b[i] = (float)rand() / RAND_MAX;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t[r] = now_ms() - t0;
    }
    qsort(t, runs, sizeof *t, cmp);
    double ms = t[runs / 2];
    printf("%d %.4f %.2f\n", n, ms, 2.0 * n * n * n / (ms * 1e6));
    free(a);
    free(b);
    free(c);
    free(t);
    return 0;
}
