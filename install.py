"""Run by the WebUI in a separate process on every launch.

The extension needs only requests, pydantic and fastapi, which every
AUTOMATIC1111 and Forge install already has, so normally this installs nothing.
It never installs or upgrades torch, gradio, pydantic, fastapi or transformers:
the WebUI pins those, and changing them breaks it. The prompt model runs in its
own environment (see README: "Start the prompt server").
"""
import launch

# import name -> pip requirement; only light, unpinned-by-the-WebUI packages belong here
REQUIREMENTS = {
    "requests": "requests>=2.25",
}

for module_name, requirement in REQUIREMENTS.items():
    if not launch.is_installed(module_name):
        launch.run_pip(f"install \"{requirement}\"", f"NewsPicGen requirement: {requirement}")
