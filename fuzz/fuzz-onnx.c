/*
 * libFuzzer entry point for the ONNX reader: any byte string must parse to a
 * model or fail with an error, without reading out of bounds or leaking.
 *
 *   make fuzz-onnx          (clang with ASan and UBSan, as fuzz-multipart)
 *   build/fuzz/fuzz-onnx -max_len=65536 CORPUS_DIR
 *
 * A truncated ONNX export (its first few kilobytes hold the model header and
 * the first nodes) makes a good seed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    yd_onnx_model *model = NULL;
    yd_error err;

    if (yd_onnx_parse(data, size, &model, &err) == 0) {
        /* Touch what a caller would read, so bad pointers show up here. */
        for (int i = 0; i < model->ninitializers; i++) {
            const yd_onnx_tensor *t = &model->initializers[i];

            if (t->count > 0) {
                (void)yd_onnx_tensor_float(t, 0);
                (void)yd_onnx_tensor_int(t, t->count - 1);
            }
            if (yd_onnx_find_initializer(model, t->name) == NULL)
                abort();
        }
        for (int i = 0; i < model->nnodes; i++)
            if (model->nodes[i].nattrs > 0)
                (void)yd_onnx_node_attr(&model->nodes[i], model->nodes[i].attrs[0].name);
    }
    yd_onnx_free(model);
    return 0;
}
