"""Distillation core (XtremeDistil progressive transfer); see the distillation issue."""
