"""The embedded engine: transformers + llguidance behind SGLang's HTTP protocol.

Everything heavy (torch, transformers, llguidance) is imported inside this
package only, so `import prompt_server.launcher` stays light.
"""
