"""Storage engines under one contract: ``contract.py`` states it, ``names.py`` names the
engines, and each folder (``memory``, ``file``, ``sqlite``, ``postgres``, ``redis``) holds
one engine's store, SQL or scripts, queue, results and joint writer.
"""
