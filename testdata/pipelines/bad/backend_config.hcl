backend "onnxrt" {
  plugin = "modelrt-onnxrt"
  config {
    intra_op_threads = 2
    graph_optimization = "all"
  }
}
