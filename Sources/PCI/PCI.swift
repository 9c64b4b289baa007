// PCI module
