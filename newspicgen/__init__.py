"""NewsPicGen's core: what joins the model side and the artist side.

`pipeline` (news -> PicturePrompt -> composed txt2img request), `batch`, and
the `newspicgen` command line. It imports `prompt_server` and `style_presets`;
neither of them imports it, and it never imports the WebUI glue (`extension`).
"""
