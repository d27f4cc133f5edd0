/* test_errors.c - how the core fails, as an embedder sees it: NULL or -1 and a message in
 * fs_error() that names the op and the shapes; never an abort. Shape mismatches in add
 * (broadcast), matmul, linear, cat, view and mse_loss, a missing file, bad optimizer options,
 * and an op on a tensor that requires grad (the failure must not record a node). */
#include "autograd/autograd.h"
#include "check.h"
#include "io/safetensors.h"
#include "module/optim.h"
#include "nn/nn.h"
#include "ops/ops.h"

int main(void)
{
    fs_tensor *a = fs_tensor_zeros(2, (int64_t[]){2, 3}), *v4 = fs_tensor_zeros(1, (int64_t[]){4});
    fs_tensor *c = fs_tensor_zeros(2, (int64_t[]){4, 5});
    if (!CHECK(a && v4 && c, "zeros (2, 3), (4), (4, 5)"))
        return check_done();

    fs_tensor *r = fs_binary(FS_ADD, a, v4);
    CHECK(r == NULL, "add (2, 3) + (4) returns NULL");
    CHECK_CONTAINS(fs_error(), "add: shapes (2, 3) and (4) cannot be broadcast together",
                   "the add error names the op and both shapes");

    r = fs_matmul(a, c);
    CHECK(r == NULL, "matmul (2, 3) @ (4, 5) returns NULL");
    CHECK_CONTAINS(fs_error(), "matmul: shapes (2, 3) and (4, 5) are not aligned",
                   "the matmul error names the op and both shapes");

    r = fs_linear(a, c, NULL);
    CHECK(r == NULL, "linear with a (4, 5) weight on (2, 3) returns NULL");
    CHECK_CONTAINS(fs_error(), "linear: input (2, 3) has 3 features but weight (4, 5) expects 5",
                   "the linear error names both shapes");

    r = fs_cat(2, (fs_tensor *[]){a, c}, 0);
    CHECK(r == NULL, "cat of (2, 3) and (4, 5) returns NULL");
    CHECK_CONTAINS(fs_error(), "cat: tensor 2 has shape (4, 5) but tensor 1 has (2, 3)",
                   "the cat error names both shapes");

    r = fs_view(a, 1, (int64_t[]){5});
    CHECK(r == NULL, "view (2, 3) as (5) returns NULL");
    CHECK_CONTAINS(fs_error(), "view: shape (5) is invalid for a tensor of shape (2, 3)",
                   "the view error names both shapes");

    r = fs_mse_loss(a, c, FS_REDUCTION_MEAN);
    CHECK(r == NULL, "mse_loss of (2, 3) against (4, 5) returns NULL");
    CHECK_CONTAINS(fs_error(), "mse_loss: input (2, 3) and target (4, 5) must have the same shape",
                   "the mse_loss error names both shapes");

    /* a failing op on a tensor that requires grad leaves the tensor a leaf without grad */
    a->requires_grad = true;
    r = fs_binary(FS_MUL, a, v4);
    CHECK(r == NULL && a->grad_fn == NULL && a->grad == NULL,
          "mul (2, 3) * (4) with requires_grad fails without touching a");
    CHECK_CONTAINS(fs_error(), "mul: shapes (2, 3) and (4)", "and names mul");

    fs_tensor_dict d;
    CHECK_INT(fs_safetensors_read("/nonexistent/fs_test.safetensors", &d), -1,
              "loading a missing file returns -1");
    CHECK_CONTAINS(fs_error(), "'/nonexistent/fs_test.safetensors'", "the error names the file");

    fs_optim_config bad = {.lr = -1, .beta1 = 0.9, .beta2 = 0.999};
    fs_optim *o = fs_optim_new(FS_OPTIM_ADAM, 1, &a, &bad);
    CHECK(o == NULL, "adam with lr -1 returns NULL");
    CHECK_CONTAINS(fs_error(), "adam: lr must be >= 0, got -1", "the error names the option");
    bad = (fs_optim_config){.lr = 0.1, .beta1 = 1.0, .beta2 = 0.9};
    o = fs_optim_new(FS_OPTIM_ADAMW, 1, &a, &bad);
    CHECK(o == NULL, "adamw with beta1 1 returns NULL");
    CHECK_CONTAINS(fs_error(), "adamw: betas must be in [0, 1), got (1, 0.9)",
                   "the error gives both betas");

    fs_tensor_release(a);
    fs_tensor_release(v4);
    fs_tensor_release(c);
    return check_done();
}
