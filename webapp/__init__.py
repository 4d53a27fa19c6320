"""The Gradio app, one module per tab; `app.py` composes them. UI only: the work is done by the gpt package."""
