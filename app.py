"""Start HINet Explorer: `python app.py` serves the app locally and prints its URL."""

from app import build_demo, launch_kwargs

if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())
