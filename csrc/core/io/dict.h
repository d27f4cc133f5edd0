/* dict.h - the tensor dictionary: what a checkpoint, a state dict and a safetensors file hold.
 * Names are copied, tensors retained; fs_tensor_dict_free releases both. */
#ifndef FS_DICT_H
#define FS_DICT_H

#include "tensor/tensor.h"

/* An ordered list of named tensors plus string metadata. */
typedef struct fs_tensor_dict {
    int64_t n, cap;
    char **names;
    fs_tensor **tensors;
    int64_t nmeta, metacap;
    char **meta_keys;
    char **meta_values;
} fs_tensor_dict;

void fs_tensor_dict_init(fs_tensor_dict *d);
void fs_tensor_dict_free(fs_tensor_dict *d);  /* releases the tensors */
/* Appends (name copied, tensor retained). */
int fs_tensor_dict_add(fs_tensor_dict *d, const char *name, fs_tensor *t);
int fs_tensor_dict_add_meta(fs_tensor_dict *d, const char *key, const char *value);
/* Index of name, or -1. */
int64_t fs_tensor_dict_find(const fs_tensor_dict *d, const char *name);

#endif
