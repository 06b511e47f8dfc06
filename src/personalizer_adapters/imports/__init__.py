"""Shops' data as they export it: files in any common encoding and compression (``files``), prices and
timestamps as written (``values``). The batch's input readers (``batch.inputs``) read through this room.
"""
