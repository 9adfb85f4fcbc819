"""`maskrcnn serve`: a local web page and an HTTP JSON API around a `Predictor`.

    uploads.py   read a request body (size limit), find the image in it, decode it (pixel limit)
    results.py   one Predictor result -> the JSON answer (COCO results rows + image size)
    app.py       the FastAPI application: /, /static/*, GET /health, POST /predict
    server.py    bind a socket, run uvicorn; `BackgroundServer` runs one in a thread
    commands.py  the `serve` command (registered into `maskrcnn` by cli.py)
    static/      the page: plain HTML, CSS and JavaScript, no build step, nothing fetched
                 from elsewhere (the page decodes COCO RLE masks itself)

FastAPI + uvicorn need the `serve` extra: `pip install 'maskrcnn[serve]'`.
"""
