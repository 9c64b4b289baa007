print("cxlkit")
