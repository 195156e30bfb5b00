"""Setting up the prompt server from nothing: its own venv, a torch that fits, the model, the process.

One code path for the WebUI tab, the /newspicgen/v1/server routes and the command
line (`python -m prompt_server.setup`). Stdlib only, so a bare Python (no venv,
no requests) can run it; nothing heavy is imported.
"""
