locals {
  home = env("HOME")
}
