"""The parts of onnx.proto the ONNX scanner reads (field numbers from onnx.proto3)."""
from __future__ import annotations

SCHEMA = {
    "Model": {1: ("ir_version", "int", None), 2: ("producer_name", "str", None), 6: ("doc_string", "str", None),
              7: ("graph", "msg", "Graph"), 8: ("opset_import", "msgs", "OpsetId"),
              14: ("metadata_props", "msgs", "Entry"), 20: ("training_info", "msgs", "TrainingInfo"),
              25: ("functions", "msgs", "Function")},
    "OpsetId": {1: ("domain", "str", None), 2: ("version", "int", None)},
    "Entry": {1: ("key", "str", None), 2: ("value", "str", None)},
    "Graph": {1: ("node", "msgs", "Node"), 2: ("name", "str", None), 5: ("initializer", "msgs", "Tensor"),
              15: ("sparse_initializer", "msgs", "SparseTensor"), 10: ("doc_string", "str", None),
              16: ("metadata_props", "msgs", "Entry")},
    "SparseTensor": {1: ("values", "msg", "Tensor"), 2: ("indices", "msg", "Tensor")},
    "Node": {3: ("name", "str", None), 4: ("op_type", "str", None), 7: ("domain", "str", None),
             5: ("attribute", "msgs", "Attribute"), 6: ("doc_string", "str", None),
             9: ("metadata_props", "msgs", "Entry")},
    "Attribute": {1: ("name", "str", None), 13: ("doc_string", "str", None), 4: ("s", "str", None),
                  9: ("strings", "strs", None), 5: ("t", "msg", "Tensor"), 10: ("tensors", "msgs", "Tensor"),
                  6: ("g", "msg", "Graph"), 11: ("graphs", "msgs", "Graph"),
                  22: ("sparse_tensor", "msg", "SparseTensor"), 23: ("sparse_tensors", "msgs", "SparseTensor")},
    "Tensor": {8: ("name", "str", None), 9: ("raw_data", "skip", None), 13: ("external_data", "msgs", "Entry"),
               14: ("data_location", "int", None), 12: ("doc_string", "str", None)},
    "TrainingInfo": {1: ("initialization", "msg", "Graph"), 2: ("algorithm", "msg", "Graph")},
    "Function": {1: ("name", "str", None), 10: ("domain", "str", None), 13: ("overload", "str", None),
                 7: ("node", "msgs", "Node"), 8: ("doc_string", "str", None),
                 9: ("opset_import", "msgs", "OpsetId")},
}
