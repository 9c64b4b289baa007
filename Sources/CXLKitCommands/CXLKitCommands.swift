// CXLKitCommands module: see Package.swift for the layering.
