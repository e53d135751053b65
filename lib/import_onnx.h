/*
 * Import of Ultralytics YOLOv8 detection exports from ONNX into the graph IR.
 */
#ifndef YOLOD_IMPORT_ONNX_H
#define YOLOD_IMPORT_ONNX_H

#include "graph.h"
#include "onnx.h"

/*
 * Builds and fuses the IR for the network up to the raw head convolutions.
 * Errors: YD_ERR_MODEL_UNSUPPORTED naming the node and op type, or
 * YD_ERR_MODEL_FORMAT for inconsistent tensors.
 */
int yd_import_onnx(const yd_onnx_model *onnx, yd_graph **out, yd_error *err);

#endif /* YOLOD_IMPORT_ONNX_H */
