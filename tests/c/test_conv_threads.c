/* test_conv_threads.c - threads that come and go (as a host's Lua threads do) each run an
 * im2col convolution, which keeps a column workspace per thread; once the threads have been
 * joined the live byte count is back where it started: each thread's workspace was freed at
 * its exit (conv.c's thread-specific key), not left behind.
 *   x (2, 4, 12, 12), w (6, 2, 3, 3), groups 2 (grouped: the im2col path on every CPU) */
#include <pthread.h>
#include <stdio.h>

#include "autograd/autograd.h"
#include "base/memory.h"
#include "base/parallel.h"
#include "check.h"
#include "nn/nn.h"

static void *one_conv(void *arg)
{
    int *ok = arg;
    fs_set_grad_enabled(false);
    fs_tensor *x = fs_tensor_full(4, (int64_t[]){2, 4, 12, 12}, 1.0f);
    fs_tensor *w = fs_tensor_full(4, (int64_t[]){6, 2, 3, 3}, 1.0f);
    fs_conv2d_args a = FS_CONV2D_ARGS_DEFAULT;
    a.padding[0] = a.padding[1] = 1;
    a.groups = 2;
    fs_tensor *y = x && w ? fs_conv2d(x, w, NULL, &a) : NULL;
    /* an inner pixel sums 2 channels x 9 taps of ones */
    *ok = y && y->ndim == 4 && y->size[1] == 6 && fs_data(y)[13] == 18.0f;
    fs_tensor_release(y);
    fs_tensor_release(w);
    fs_tensor_release(x);
    return NULL;
}

int main(void)
{
    fs_set_num_threads(1); /* the calling thread's own workspace, not an OpenMP team's */
    int64_t before = fs_bytes_live();
    enum { ROUNDS = 3, THREADS = 4 };
    int all_ok = 1;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t[THREADS];
        int ok[THREADS] = {0};
        for (int i = 0; i < THREADS; i++)
            if (pthread_create(&t[i], NULL, one_conv, &ok[i]) != 0)
                ok[i] = 0, t[i] = 0;
        for (int i = 0; i < THREADS; i++) {
            if (t[i])
                pthread_join(t[i], NULL);
            all_ok = all_ok && ok[i];
        }
    }
    CHECK(all_ok, "12 threads in 3 rounds each ran a grouped convolution with the right values");
    CHECK_INT(fs_bytes_live() - before, 0, "no bytes left live after the threads exited");
    return check_done();
}
