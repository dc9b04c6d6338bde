"""The Ray Serve app: longvid over HTTP."""
