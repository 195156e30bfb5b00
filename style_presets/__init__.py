"""Style presets: the artist's side of NewsPicGen (stdlib + pydantic only).

A preset is one JSON file: a prompt template with {prompt}, a negative prompt,
LoRA / embedding references, generation settings and the picture types it
serves (`preset.py`). `store.py` reads the built-ins and the user folder;
`compose.py` turns a PicturePrompt and a preset into a txt2img request.
"""
