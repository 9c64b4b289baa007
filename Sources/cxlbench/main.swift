print("cxlbench: not yet implemented")
