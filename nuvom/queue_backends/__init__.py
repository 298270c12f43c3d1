"""The queue backends' old import paths, kept for users and plugins written against them.

The engines live in ``nuvom.backends``; each module here re-exports public names only.
"""
