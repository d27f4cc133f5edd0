/* test_module.c - a module's state through a safetensors file, as an embedder saves and
 * restores weights: sequential{linear(3, 4), relu, linear(4, 2)} -> state dict -> file ->
 * dict -> a second module built with other weights; names, shapes, values and the forward
 * output compared bit for bit. Then a mis-shaped state: -1, the key named, nothing changed.
 *   x: (5, 3) -> (5, 2) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "check.h"
#include "io/safetensors.h"
#include "module/module.h"

static fs_module *net(uint64_t seed)
{
    fs_generator g;
    fs_generator_seed(&g, seed);
    fs_module *parts[] = {fs_nn_linear(3, 4, true, &g), fs_nn_relu(), fs_nn_linear(4, 2, true, &g)};
    fs_module *m = parts[0] && parts[1] && parts[2] ? fs_nn_sequential(3, parts) : NULL;
    for (int i = 0; i < 3; i++)
        fs_module_release(parts[i]);
    return m;
}

int main(void)
{
    fs_set_grad_enabled(false); /* inference only: no tape, no gradient buffer */
    fs_module *a = net(1), *b = net(2);
    if (!CHECK(a && b, "two sequential{linear, relu, linear} built"))
        return check_done();
    CHECK_INT(fs_module_num_parameters(a), 3 * 4 + 4 + 4 * 2 + 2, "26 parameters");

    fs_generator g;
    fs_generator_seed(&g, 3);
    fs_tensor *x = fs_tensor_new(2, (int64_t[]){5, 3});
    fs_tensor_normal_(x, &g, 0, 1);
    fs_tensor *ya = fs_module_forward(a, x), *yb0 = fs_module_forward(b, x);
    CHECK(ya && yb0 && ya->ndim == 2 && ya->size[0] == 5 && ya->size[1] == 2,
          "forward (5, 3) -> (5, 2)");
    CHECK(ya && yb0 && memcmp(fs_data(ya), fs_data(yb0), 10 * sizeof(float)) != 0,
          "the two modules start with different weights");

    char path[64];
    snprintf(path, sizeof path, "/tmp/fs_test_module_%d.safetensors", (int)getpid());
    fs_tensor_dict sd, back;
    fs_tensor_dict_init(&sd);
    fs_tensor_dict_init(&back);
    CHECK_INT(fs_module_state_dict(a, &sd), 0, "state_dict");
    CHECK_INT(fs_tensor_dict_add_meta(&sd, "format", "pt"), 0, "metadata added");
    CHECK_INT(fs_safetensors_write(path, &sd), 0, "safetensors save");
    CHECK_INT(fs_safetensors_read(path, &back), 0, "safetensors load");
    remove(path);

    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const int64_t numels[] = {12, 4, 8, 2};
    CHECK_INT(back.n, 4, "the file holds 4 tensors");
    for (int i = 0; i < 4; i++) {
        int64_t k = fs_tensor_dict_find(&back, names[i]), j = fs_tensor_dict_find(&sd, names[i]);
        if (CHECK(k >= 0 && j >= 0, "'%s' is in the file", names[i])) {
            CHECK(fs_same_shape(back.tensors[k], sd.tensors[j]), "'%s' keeps its shape %s",
                  names[i], FS_SHAPE(sd.tensors[j]));
            CHECK_SAME_FLOATS(fs_data(back.tensors[k]), fs_data(sd.tensors[j]), numels[i],
                              "'%s' values round-trip bit for bit", names[i]);
        }
    }
    CHECK(back.nmeta == 1 && strcmp(back.meta_keys[0], "format") == 0 &&
              strcmp(back.meta_values[0], "pt") == 0, "metadata round-trips");

    CHECK_INT(fs_module_load_state_dict(b, &back, true, false), 0,
              "strict load into the other module");
    fs_tensor *yb = fs_module_forward(b, x);
    if (CHECK(ya && yb, "forward after load"))
        CHECK_SAME_FLOATS(fs_data(yb), fs_data(ya), 10,
                          "the loaded module computes the same output");

    /* a wrong shape: -1, the message names the module and the key, nothing is changed */
    fs_tensor_dict bad;
    fs_tensor_dict_init(&bad);
    for (int64_t k = 0; k < back.n; k++) {
        fs_tensor *t = back.tensors[k];
        fs_tensor *z = strcmp(back.names[k], "2.weight") == 0
                           ? fs_tensor_zeros(2, (int64_t[]){2, 5})
                           : fs_tensor_full(t->ndim, t->size, 7.0f);
        fs_tensor_dict_add(&bad, back.names[k], z);
        fs_tensor_release(z);
    }
    CHECK_INT(fs_module_load_state_dict(b, &bad, true, false), -1,
              "a mis-shaped state is refused");
    CHECK_CONTAINS(fs_error(), "Sequential", "the error names the module");
    CHECK_CONTAINS(fs_error(), "2.weight", "the error names the key");
    CHECK_CONTAINS(fs_error(), "(2, 5)", "the error gives the shape in the state");
    fs_tensor *yb2 = fs_module_forward(b, x);
    if (CHECK(yb2 != NULL, "forward after the refused load"))
        CHECK_SAME_FLOATS(fs_data(yb2), fs_data(ya), 10, "the refused load changed nothing");

    fs_tensor_dict_free(&bad);
    fs_tensor_dict_free(&sd);
    fs_tensor_dict_free(&back);
    fs_tensor *all[] = {x, ya, yb0, yb, yb2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        fs_tensor_release(all[i]);
    fs_module_release(a);
    fs_module_release(b);
    return check_done();
}
