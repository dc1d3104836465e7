locals {
  secret = file("../../../go.mod")
}
