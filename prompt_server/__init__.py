"""NewsPicGen prompt server: news in, schema-valid drawing prompt out.

Nothing heavy is imported here: the WebUI extension imports this package, and
torch/transformers are only loaded by the embedded engine when it starts.
"""
