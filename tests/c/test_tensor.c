/* test_tensor.c - tensor ops through the core's C API, values checked: matmul (also on a
 * transposed, non-contiguous view), broadcasting add, sum over a dim, mean, and a view that
 * shares storage. a: (2, 3), b: (3, 2). */
#include "check.h"
#include "ops/ops.h"
#include "tensor/tensor.h"

static fs_tensor *from(int ndim, const int64_t *size, const float *v)
{
    return fs_tensor_from_data(ndim, size, v);
}

int main(void)
{
    const float av[] = {1, 2, 3, 4, 5, 6}, bv[] = {7, 8, 9, 10, 11, 12};
    fs_tensor *a = from(2, (int64_t[]){2, 3}, av), *b = from(2, (int64_t[]){3, 2}, bv);
    if (!CHECK(a && b, "from_data makes (2, 3) and (3, 2)"))
        return check_done();

    fs_tensor *c = fs_matmul(a, b);
    const float cv[] = {58, 64, 139, 154};
    if (CHECK(c && c->ndim == 2 && c->size[0] == 2 && c->size[1] == 2,
              "matmul (2, 3) @ (3, 2) has shape (2, 2)"))
        CHECK_SAME_FLOATS(fs_data(c), cv, 4, "matmul values are [[58, 64], [139, 154]]");

    /* the same product from a (3, 2) storage seen transposed */
    const float atv[] = {1, 4, 2, 5, 3, 6};
    fs_tensor *at = from(2, (int64_t[]){3, 2}, atv);
    fs_tensor *a2 = fs_transpose(at, 0, 1);
    CHECK(a2 && !fs_is_contiguous(a2), "transpose is a non-contiguous view");
    fs_tensor *c2 = fs_matmul(a2, b);
    if (CHECK(c2 != NULL, "matmul takes the transposed view"))
        CHECK_SAME_FLOATS(fs_data(c2), cv, 4, "matmul of the view equals the contiguous one");

    /* (2, 3) + (3,) broadcasts over rows */
    const float rv[] = {10, 20, 30};
    fs_tensor *r = from(1, (int64_t[]){3}, rv);
    fs_tensor *s = fs_binary(FS_ADD, a, r);
    const float sv[] = {11, 22, 33, 14, 25, 36};
    if (CHECK(s && s->ndim == 2 && s->size[0] == 2 && s->size[1] == 3,
              "add (2, 3) + (3) has shape (2, 3)"))
        CHECK_SAME_FLOATS(fs_data(s), sv, 6, "broadcast add values");

    fs_tensor *rows = fs_sum(a, 1, false);
    if (CHECK(rows && rows->ndim == 1 && rows->size[0] == 2, "sum over dim 1 has shape (2)")) {
        CHECK_NEAR(fs_data(rows)[0], 6.0, 0, "row 0 sums to 6");
        CHECK_NEAR(fs_data(rows)[1], 15.0, 0, "row 1 sums to 15");
    }
    fs_tensor *m = fs_mean(a, FS_ALL_DIMS, false);
    if (CHECK(m && m->ndim == 0, "mean of all elements is 0-d"))
        CHECK_NEAR(fs_data(m)[0], 3.5, 1e-7, "mean is 3.5");

    /* a view shares storage: writing through it changes a */
    fs_tensor *row1 = fs_select(a, 0, 1);
    if (CHECK(row1 && row1->ndim == 1 && row1->size[0] == 3, "select row 1 has shape (3)")) {
        fs_tensor_fill_(row1, -1.0f);
        CHECK_NEAR(fs_data(a)[3], -1.0, 0, "filling the selected row writes into a");
        CHECK_NEAR(fs_data(a)[2], 3.0, 0, "and leaves row 0 alone");
    }

    fs_tensor *all[] = {a, b, c, at, a2, c2, r, s, rows, m, row1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        fs_tensor_release(all[i]);
    return check_done();
}
