"""Official class names of the datasets whose releases do not spell them out in a
fixed place of spikeflow's code (index = label).

Each list is the label set as the dataset's authors publish it:

* N-Caltech101: the 101 class folders of ``Caltech101.zip`` (Caltech101's 101
  categories plus ``BACKGROUND_Google``, less ``Faces``, which Orchard et al. removed
  because it duplicates ``Faces_easy``), in sorted (case-sensitive) order, which is
  the labelling of SpikingJelly's folder dataset.
* DVS-Lip: the 100 word folders of ``DVS-Lip.zip`` (words of LRW, Tan et al. 2022),
  sorted, as the folder dataset numbers them.
* SHD: labels 0-9 are the English digits "zero" to "nine", 10-19 the German digits
  "null" to "neun" (Cramer et al. 2020); the release's ``extra/keys`` holds the same
  names and a dataset instance takes them from there.
* SSC: the 35 words of Google Speech Commands v2 in the alphabetical order of the
  release's labels (``extra/keys``; an instance takes them from its file).
* HARDVS and ES-ImageNet publish numbered classes only; their names are those of the
  release's class folders (``action_001`` ... ``action_300``, ``class0`` ...
  ``class999``).
"""

from __future__ import annotations

__all__ = [
    "DVSLIP_CLASSES",
    "ES_IMAGENET_CLASSES",
    "HARDVS_CLASSES",
    "NCALTECH101_CLASSES",
    "SHD_CLASSES",
    "SSC_CLASSES",
]

NCALTECH101_CLASSES: tuple[str, ...] = tuple(
    sorted(
        """
        accordion airplanes anchor ant BACKGROUND_Google barrel bass beaver binocular
        bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan
        cellphone chair chandelier cougar_body cougar_face crab crayfish crocodile
        crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar
        elephant emu euphonium ewer Faces_easy ferry flamingo flamingo_head garfield
        gerenuk gramophone grand_piano hawksbill headphone hedgehog helicopter ibis
        inline_skate joshua_tree kangaroo ketch lamp laptop Leopards llama lobster lotus
        mandolin mayfly menorah metronome minaret Motorbikes nautilus octopus okapi pagoda
        panda pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner
        scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus
        stop_sign strawberry sunflower tick trilobite umbrella watch water_lilly
        wheelchair wild_cat windsor_chair wrench yin_yang
        """.split()
    )
)

DVSLIP_CLASSES: tuple[str, ...] = tuple(
    sorted(
        """
        accused action allow allowed america american another around attacks banks become
        being benefit benefits between billion called capital challenge change chief
        couple court death described difference different during economic education
        election england evening everything exactly general germany giving ground happen
        happened having heavy house hundreds immigration judge labour leaders legal
        little london majority meeting military million minutes missing needs number
        numbers paying perhaps point potential press price question really right russia
        russian saying security several should significant spend spent started still
        support syria syrian taken taking terms these thing think times tomorrow under
        warning water welcome words worst years young
        """.split()
    )
)

SHD_CLASSES: tuple[str, ...] = (
    *"zero one two three four five six seven eight nine".split(),
    *"null eins zwei drei vier fuenf sechs sieben acht neun".split(),
)

SSC_CLASSES: tuple[str, ...] = tuple(
    sorted(
        """
        backward bed bird cat dog down eight five follow forward four go happy house learn
        left marvin nine no off on one right seven sheila six stop three tree two up visual
        wow yes zero
        """.split()
    )
)

HARDVS_CLASSES: tuple[str, ...] = tuple(f"action_{k:03d}" for k in range(1, 301))

ES_IMAGENET_CLASSES: tuple[str, ...] = tuple(f"class{k}" for k in range(1000))
