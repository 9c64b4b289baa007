// SPDX-License-Identifier: GPL-2.0
/*
 * cxlkit_msix_test: guest-side driver for scripts/qemu-vfio-user-test (issue 10).
 *
 * Bound by hand (new_id) to the vfio-user CXL device in the QEMU guest: enables the
 * device and bus mastering, allocates every MSI-X vector and requests an interrupt handler for each,
 * so the interrupts the device raises are counted in /proc/interrupts as
 * "cxlkit-msix-N". Nothing else: it never touches the device's registers.
 * (The Debian 6.1 kernel has no CONFIG_VFIO_NOIOMMU, so guest vfio-pci cannot do this.)
 */
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/pci.h>

#define MAXVEC 32

struct cmt {
	int nvec;
	char names[MAXVEC][24];
};

static irqreturn_t cmt_irq(int irq, void *data)
{
	return IRQ_HANDLED;
}

static int cmt_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct cmt *c;
	int i, rc, n = pci_msix_vec_count(pdev);

	if (n <= 0)
		return -ENODEV;
	n = min(n, MAXVEC);
	c = devm_kzalloc(&pdev->dev, sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	rc = pcim_enable_device(pdev);
	if (rc)
		return rc;
	pci_set_master(pdev);	/* an MSI is a memory write: no Bus Master Enable, no interrupt */
	rc = pci_alloc_irq_vectors(pdev, n, n, PCI_IRQ_MSIX);
	if (rc < 0)
		return rc;
	c->nvec = rc;
	for (i = 0; i < c->nvec; i++) {
		snprintf(c->names[i], sizeof(c->names[i]), "cxlkit-msix-%d", i);
		rc = request_irq(pci_irq_vector(pdev, i), cmt_irq, 0, c->names[i], c);
		if (rc) {
			while (--i >= 0)
				free_irq(pci_irq_vector(pdev, i), c);
			pci_free_irq_vectors(pdev);
			return rc;
		}
	}
	pci_set_drvdata(pdev, c);
	dev_info(&pdev->dev, "cxlkit_msix_test: MSI-X enabled, %d vectors\n", c->nvec);
	return 0;
}

static void cmt_remove(struct pci_dev *pdev)
{
	struct cmt *c = pci_get_drvdata(pdev);
	int i;

	for (i = 0; i < c->nvec; i++)
		free_irq(pci_irq_vector(pdev, i), c);
	pci_free_irq_vectors(pdev);
}

static struct pci_driver cmt_driver = {
	.name = "cxlkit_msix_test",
	.id_table = NULL,		/* bound with new_id only */
	.probe = cmt_probe,
	.remove = cmt_remove,
};
module_pci_driver(cmt_driver);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("count MSI-X interrupts of a vfio-user CXL test device");
