print("distillctl")
