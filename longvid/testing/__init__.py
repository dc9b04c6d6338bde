"""Local stand-ins for the paid services, speaking their real wire protocols on 127.0.0.1.

Used by the test suite and startable by hand to try longvid against them without keys.
"""
