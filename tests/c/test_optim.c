/* test_optim.c - resuming an optimizer from C: Adam (amsgrad, weight decay) steps a model 3
 * times; its state goes out as a tensor dict and as a file, into fresh optimizers over copies
 * of the model; one more step everywhere gives the same parameters and moments bit for bit.
 * Then states that do not fit: -1, the key named, nothing changed.
 *   model: sequential{linear(3, 4), relu, linear(4, 2)} (26 parameters, 4 tensors)
 *   x: (8, 3), target: (8, 2), loss = mean((model(x) - target)^2) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "check.h"
#include "io/safetensors.h"
#include "module/module.h"
#include "module/optim.h"

static fs_module *net(uint64_t seed, int64_t hidden)
{
    fs_generator g;
    fs_generator_seed(&g, seed);
    fs_module *parts[] = {fs_nn_linear(3, hidden, true, &g), fs_nn_relu(),
                          fs_nn_linear(hidden, 2, true, &g)};
    fs_module *m = parts[0] && parts[1] && parts[2] ? fs_nn_sequential(3, parts) : NULL;
    for (int i = 0; i < 3; i++)
        fs_module_release(parts[i]);
    return m;
}

static fs_optim *adam(fs_module *m, double lr)
{
    fs_optim_config c = {.lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                         .weight_decay = 0.01, .amsgrad = true};
    fs_tensor **params;
    int n;
    if (!m || fs_module_ensure_grad(m) < 0 || fs_module_parameter_list(m, true, &params, &n) < 0)
        return NULL;
    fs_optim *o = fs_optim_new(FS_OPTIM_ADAM, n, params, &c);
    free(params);
    return o;
}

/* zero_grad, forward, loss, backward, step: 0 or -1 */
static int train_step(fs_module *m, fs_optim *o, fs_tensor *x, fs_tensor *target)
{
    fs_optim_zero_grad(o);
    fs_tensor *y = fs_module_forward(m, x);
    fs_tensor *loss = y ? fs_mse_loss(y, target, FS_REDUCTION_MEAN) : NULL;
    int rc = loss ? fs_backward(loss, NULL, false) : -1;
    if (rc == 0)
        rc = fs_optim_step(o);
    fs_tensor_release(y);
    fs_tensor_release(loss);
    return rc;
}

int main(void)
{
    fs_generator g;
    fs_generator_seed(&g, 5);
    fs_tensor *x = fs_tensor_new(2, (int64_t[]){8, 3});
    fs_tensor *target = fs_tensor_new(2, (int64_t[]){8, 2});
    fs_tensor_normal_(x, &g, 0, 1);
    fs_tensor_normal_(target, &g, 0, 1);

    fs_module *a = net(1, 4), *b = net(2, 4), *c = net(3, 4);
    fs_optim *oa = adam(a, 0.02), *ob = adam(b, 0.5), *oc = adam(c, 0.7);
    if (!CHECK(oa && ob && oc, "three Adam optimizers over three models"))
        return check_done();
    CHECK(fs_optim_is_flat(oa), "the optimizer runs over the model's flat buffer");
    int rc = 0;
    for (int s = 0; s < 3; s++)
        rc |= train_step(a, oa, x, target);
    CHECK_INT(rc, 0, "3 training steps");

    /* the model and the optimizer after 3 steps, as dicts (copies) and as files */
    char mpath[64], opath[64];
    snprintf(mpath, sizeof mpath, "/tmp/fs_test_optim_%d.model", (int)getpid());
    snprintf(opath, sizeof opath, "/tmp/fs_test_optim_%d.optim", (int)getpid());
    fs_tensor_dict msd, osd, mback;
    fs_tensor_dict_init(&msd);
    fs_tensor_dict_init(&osd);
    fs_tensor_dict_init(&mback);
    CHECK_INT(fs_module_state_dict(a, &msd), 0, "model state_dict");
    CHECK_INT(fs_safetensors_write(mpath, &msd), 0, "model saved");
    CHECK_INT(fs_safetensors_read(mpath, &mback), 0, "model read back (a copy)");
    CHECK_INT(fs_optim_state_dict(oa, &osd), 0, "optimizer state_dict");
    CHECK_INT(fs_optim_save(oa, opath), 0, "optimizer saved");
    const char *keys[] = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    const int64_t lens[] = {4, 26, 26, 26};
    for (int k = 0; k < 4; k++) {
        int64_t i = fs_tensor_dict_find(&osd, keys[k]);
        CHECK(i >= 0 && osd.tensors[i]->ndim == 1 && osd.tensors[i]->size[0] == lens[k],
              "the state holds '%s' of shape (%lld)", keys[k], (long long)lens[k]);
    }
    CHECK_INT(osd.n, 4, "and nothing else");

    /* b from the dicts, c from the files */
    CHECK_INT(fs_module_load_state_dict(b, &mback, true, false), 0, "model b loads the weights");
    CHECK_INT(fs_optim_load_state_dict(ob, &osd), 0, "optimizer b loads the state dict");
    CHECK_NEAR(ob->c.lr, 0.02, 0, "the state brings lr 0.02 (b was made with 0.5)");
    CHECK(ob->steps[0] == 3 && ob->steps[3] == 3, "and the step counts (3)");
    CHECK_INT(fs_module_load_state_dict(c, &mback, true, false), 0, "model c loads the weights");
    CHECK_INT(fs_optim_load(oc, opath), 0, "optimizer c loads the file");
    CHECK_NEAR(oc->c.lr, 0.02, 0, "the file brings lr 0.02 (c was made with 0.7)");
    remove(mpath);
    remove(opath);

    CHECK_INT(train_step(a, oa, x, target), 0, "a 4th step on the original");
    CHECK_INT(train_step(b, ob, x, target), 0, "the same step on the dict copy");
    CHECK_INT(train_step(c, oc, x, target), 0, "the same step on the file copy");
    CHECK_SAME_FLOATS(fs_data(b->flat), fs_data(a->flat), 26, "dict copy: parameters bit for bit");
    CHECK_SAME_FLOATS(fs_data(c->flat), fs_data(a->flat), 26, "file copy: parameters bit for bit");
    CHECK_SAME_FLOATS(ob->exp_avg, oa->exp_avg, 26, "dict copy: exp_avg bit for bit");
    CHECK_SAME_FLOATS(oc->exp_avg_sq, oa->exp_avg_sq, 26, "file copy: exp_avg_sq bit for bit");
    CHECK_SAME_FLOATS(oc->max_exp_avg_sq, oa->max_exp_avg_sq, 26,
                      "file copy: max_exp_avg_sq bit for bit");

    /* a state for 26 parameters into an optimizer over 32 (hidden 5): refused, unchanged */
    fs_module *d = net(4, 5);
    fs_optim *od = adam(d, 0.1);
    if (CHECK(od != NULL, "an optimizer over a wider model")) {
        CHECK_INT(train_step(d, od, x, target), 0, "one step on it");
        float before[32];
        memcpy(before, od->exp_avg, sizeof before);
        CHECK_INT(fs_optim_load_state_dict(od, &osd), -1, "the 26-parameter state is refused");
        CHECK_CONTAINS(fs_error(), "adam load_state_dict: ", "the error names the optimizer");
        CHECK_CONTAINS(fs_error(), "'exp_avg' must have shape (32), got (26)",
                       "the error names the key and both shapes");
        CHECK_SAME_FLOATS(od->exp_avg, before, 32, "the refused state changed no moment");
        CHECK(od->steps[0] == 1 && od->c.lr == 0.1, "nor the step counts and lr");
        fs_optim_free(od);
    }
    fs_module_release(d);

    /* an Adam state into SGD, and a model file into an optimizer */
    fs_tensor **params;
    int n;
    fs_optim_config sc = {.lr = 0.1};
    fs_optim *os = fs_module_parameter_list(a, true, &params, &n) == 0
                       ? fs_optim_new(FS_OPTIM_SGD, n, params, &sc) : NULL;
    if (os)
        free(params);
    CHECK_INT(os ? fs_optim_load_state_dict(os, &osd) : 0, -1, "sgd refuses an adam state");
    CHECK_CONTAINS(fs_error(), "sgd load_state_dict: the state is from a adam optimizer",
                   "and says where it is from");
    fs_optim_free(os);
    fs_safetensors_write(mpath, &msd);
    CHECK_INT(fs_optim_load(oa, mpath), -1, "a model file is no optimizer state");
    CHECK_CONTAINS(fs_error(), "is not a saved adam optimizer state", "the error says so");
    remove(mpath);

    fs_tensor_dict_free(&msd);
    fs_tensor_dict_free(&osd);
    fs_tensor_dict_free(&mback);
    fs_optim_free(oa);
    fs_optim_free(ob);
    fs_optim_free(oc);
    fs_module_release(a);
    fs_module_release(b);
    fs_module_release(c);
    fs_tensor_release(x);
    fs_tensor_release(target);
    return check_done();
}
