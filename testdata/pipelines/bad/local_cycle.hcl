locals {
  a = "${local.b}!"
  b = upper(local.a)
}
