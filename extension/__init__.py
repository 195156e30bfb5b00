"""AUTOMATIC1111 / Forge glue for NewsPicGen; the only package that knows the WebUI exists."""
