// CXL module: see Package.swift for the layering.
