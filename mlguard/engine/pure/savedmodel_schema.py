"""The parts of TensorFlow's saved_model.proto / graph.proto the Keras scanner reads: every op of every graph
and function (field numbers from tensorflow/core/protobuf/saved_model.proto, meta_graph.proto, graph.proto,
function.proto, node_def.proto)."""
from __future__ import annotations

SCHEMA = {
    "SavedModel": {2: ("meta_graphs", "msgs", "MetaGraph")},
    "MetaGraph": {2: ("graph_def", "msg", "Graph")},
    "Graph": {1: ("node", "msgs", "Node"), 2: ("library", "msg", "Library")},
    "Library": {1: ("function", "msgs", "Function")},
    "Function": {1: ("signature", "msg", "OpDef"), 3: ("node_def", "msgs", "Node")},
    "OpDef": {1: ("name", "str", None)},
    "Node": {1: ("name", "str", None), 2: ("op", "str", None)},
}
